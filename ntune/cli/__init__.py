"""The command line: the typer app (:mod:`ntune.cli.app`) and the commands that print (the only printing layer)."""
