"""DynamoDB-compatible tables: expressions and item semantics (tables.expressions), storage and the API."""
