"""Pulumi entry point (`pulumi up` / `pulumi preview`): the program lives in infra/program.py."""
from infra.program import main

main()
