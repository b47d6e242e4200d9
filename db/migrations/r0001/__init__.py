"""The pieces of revision 0001 (initial schema), split to keep each module small."""
