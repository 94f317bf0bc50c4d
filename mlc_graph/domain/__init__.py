"""Pure product rules with no I/O: subscription tiers, web-vitals validation, roster validation."""
