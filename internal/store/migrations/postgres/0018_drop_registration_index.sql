-- No query reads forwarded usage by registration: rating goes through
-- commerce_usage_rating, totals through commerce_usage_charged, and the
-- reconciliation file through the rating index too. The index only cost
-- every materialised record one more insertion.
DROP INDEX commerce_usage_registration;
