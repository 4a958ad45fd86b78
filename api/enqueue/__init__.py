"""The way an email goes onto a queue: the gateway (failover, deadlines), the batcher
(SendMessageBatch), per-queue circuits, the choice of queue and the regional clients.
"""
