"""tap-ashby: a Singer tap for the Ashby ATS."""

__version__ = "0.3.0"
