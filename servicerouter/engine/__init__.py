"""The loop that ties the stages: one-shot and live runs, coalescing, retries."""
