"""The review desk: approve, reject and make again in the browser."""
