"""The booking worker: syncs confirmed bookings and seat transitions from Redis to Postgres."""
