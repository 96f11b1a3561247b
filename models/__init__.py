"""The preference model: folds new evidence into a user's textual summary, behind one narrow interface."""
