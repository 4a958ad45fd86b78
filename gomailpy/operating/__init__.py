"""What an operator runs and reads: the controls, resources (`gomail init`),
the status report, logging, the event loop, where `gomail up` can be found.
"""
