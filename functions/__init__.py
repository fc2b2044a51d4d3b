"""Lambda: functions, versions, aliases, concurrency, function URLs, event source mappings, invoke."""
