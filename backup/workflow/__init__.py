"""The backup workflow: orchestrators, activities, and what flows between them."""
