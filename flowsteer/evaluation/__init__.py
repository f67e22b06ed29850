"""Looking at results: training curves, evaluation reports against baselines."""
