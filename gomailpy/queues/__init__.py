"""Carrying mail: the AWS clients (aws.py), the SQS queues (sqs.py), the S3 claim
check for large emails and the dead-letter queues.
"""
