"""The three editing engines behind one protocol (`base.Editor`)."""
