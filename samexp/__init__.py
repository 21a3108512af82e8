"""samexp: adapt Segment Anything to your own segmentation data, one tracked experiment at a time."""

__version__ = "0.1.0"
