"""The background protection pipeline: job queue (trio side), worker processes
(detect → rank → alter), and recovery of staged work after a crash."""
