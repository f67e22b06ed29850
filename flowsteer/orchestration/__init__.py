"""Interactive orchestration: a person steering the Flow-Director turn by turn."""
