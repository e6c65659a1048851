"""The command line: the only place that prints or turns errors into prose."""
