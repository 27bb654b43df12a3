"""The generator of the four base bundles: their configs, written once for all four (:mod:`.configs`), their
``docs/README.md`` (:mod:`.docs`), and the files written into ``bundles/<variant>/`` (:mod:`.generate`,
``raagr2 bundles``).

It only writes files. What those configs call while they run lives below it, in :mod:`raagr2_monai.bundle`,
:mod:`raagr2_monai.deploy` and the packages under them, and never imports it: a pruning run writes its bundle from
the source bundle's files, not from here.
"""
