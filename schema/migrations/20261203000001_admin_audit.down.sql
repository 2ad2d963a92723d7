DROP TABLE IF EXISTS admin_audit;
