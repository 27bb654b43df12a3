"""``python -m raagr2_monai.cli``: the ``raagr2`` console script (:func:`raagr2_monai.cli.main`)."""

from . import main

if __name__ == "__main__":
    main()
