"""``python -m ntune``: the ``ntune`` command line (:mod:`ntune.cli.app`), e.g. ``python -m ntune train CONFIG``."""

from ntune.cli.app import main

if __name__ == "__main__":
    main()
