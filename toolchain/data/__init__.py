"""Data: registered datasets (static images today) and spike encoders."""
