"""Many tickers: per-ticker and pooled models, cross-sectional portfolios, and the universe's files."""
