"""What a downloaded video is: opened and decoded (PyAV), with a poster."""
