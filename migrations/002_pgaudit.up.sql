-- Cloud SQL's cloudsql.enable_pgaudit flag loads pgaudit; the extension must also exist in the database
-- for pgaudit.log to audit anything (CIS GCP 6.2). Where pgaudit is not installed (a plain local
-- PostgreSQL), this does nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgaudit') THEN
        CREATE EXTENSION IF NOT EXISTS pgaudit;
    END IF;
END
$$;
