"""tap-ashby: a Singer tap for the Ashby ATS."""
