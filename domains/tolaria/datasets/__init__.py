"""Data sets that read real data installed on the machine: one loader per module.

`idx` reads Fashion-MNIST (Debian's dataset-fashion-mnist) and MNIST from IDX files, `austen` Jane
Austen's novels (Debian's r-cran-janeaustenr); `splits` holds the value every loader returns. Nothing is
downloaded: a missing data set raises DataUnavailable, whose one-line message names the Debian package or
the option to use. domains/tolaria/data.py registers these loaders beside its built-in ones.
"""
