"""Allows `python -m proxlb_opt`."""

from proxlb_opt.cli import main

main()
