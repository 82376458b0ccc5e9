"""`evpipe tail`: read a topic without joining a group or committing, and print its messages as JSON lines."""
