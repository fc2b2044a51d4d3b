"""EventBridge: buses, rules, targets, patterns, schedules, input transformers; async invoke and event sources."""
