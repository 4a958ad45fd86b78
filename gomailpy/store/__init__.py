"""The status table: the one DynamoDB boundary (dynamodb.py) and every record kind kept
on it (deliveries, events, suppressions, small items), each with a memory and a DynamoDB
implementation behind a small Protocol.
"""
