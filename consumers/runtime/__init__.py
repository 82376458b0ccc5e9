"""The consumer runtime shared by the archiver and the loader: consume, batch, write, commit."""
