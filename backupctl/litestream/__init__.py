"""litestream"""
