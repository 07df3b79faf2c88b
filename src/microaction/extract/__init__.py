"""Video → body parse → region clips → encoders → feature store."""
