"""What a fit leaves for a person or a later run: the CSV export, the saved model folder, the trend
report, the plots, the closing summary, and the check that no output lands on an input."""
