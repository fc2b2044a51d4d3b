"""Step Functions: Amazon States Language workflows (issue #17)."""
