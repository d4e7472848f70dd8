from backupctl.cli import main

raise SystemExit(main())
