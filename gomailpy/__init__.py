"""gomailpy: reliable, fault-tolerant email sending over SQS queues and several providers."""

__version__ = "0.1.0"
