"""Errors that mean "the user asked for something impossible", shown as one line with exit code 2."""


class UserError(Exception):
    """Bad input from the user: the CLI prints the message alone and exits with code 2."""


class GenomeError(UserError):
    """A genome (bit list or genome file) that does not fit the genome specification."""


class FitError(RuntimeError):
    """A DIP fit that failed (non-finite loss, degenerate network); the search scores it worst."""
