"""The command line (`gomail`, `pipeline`): an application of the library, beside api/
and pipeline/, and the only code that imports all of them and the local stack.
"""
