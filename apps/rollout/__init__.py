"""Progressive delivery: flag evaluation with sticky rollouts, audited overrides, canary analysis."""
