"""Reading: long polls on the queues, intake (decode, skip what was sent, load the
claim check) and the age of what waits.
"""
