"""Jobs: the job record, the queue that runs them one at a time, and the durable job store."""
