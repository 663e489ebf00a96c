"""What comes in: A1111 API fields to requests, JSON value checks, image input limits."""
