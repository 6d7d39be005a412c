"""Model lifecycle: stages and promotion gates, rollback, consumers, lineage, holds,
retention, deprecation, scheduled promotions."""
