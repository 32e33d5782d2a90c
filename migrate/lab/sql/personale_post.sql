-- Personnel management: what comes after the bulk load.

CREATE INDEX family_member_employee_idx ON family_member (employee_id);
CREATE INDEX employment_contract_employee_idx ON employment_contract (employee_id, start_date);
CREATE INDEX classification_contract_idx ON classification (contract_id, valid_from);
CREATE INDEX unit_assignment_contract_idx ON unit_assignment (contract_id, valid_from);
CREATE INDEX career_event_employee_idx ON career_event (employee_id, event_date);
CREATE INDEX personnel_document_employee_idx ON personnel_document (employee_id, doc_date);
CREATE INDEX employee_surname_idx ON employee (lower(surname), lower(given_name));

-- Filled from the loaded history by a set-based query: staff on the last day of each month.
INSERT INTO headcount_snapshot (snapshot_month, org_unit_code, category_system, headcount, fte)
SELECT m.month_start::date, u.code, k.system, count(*), sum(c.part_time_pct) / 100
FROM generate_series(pg_temp.p_start(), pg_temp.p_end(), interval '1 month') AS m (month_start)
JOIN employment_contract c
  ON c.start_date <= (m.month_start + interval '1 month - 1 day')::date
 AND (c.end_date IS NULL OR c.end_date >= (m.month_start + interval '1 month - 1 day')::date)
JOIN unit_assignment a
  ON a.contract_id = c.contract_id
 AND a.valid_from <= (m.month_start + interval '1 month - 1 day')::date
 AND (a.valid_to IS NULL OR a.valid_to >= (m.month_start + interval '1 month - 1 day')::date)
JOIN classification cl
  ON cl.contract_id = c.contract_id
 AND cl.valid_from <= (m.month_start + interval '1 month - 1 day')::date
 AND (cl.valid_to IS NULL OR cl.valid_to >= (m.month_start + interval '1 month - 1 day')::date)
JOIN job_category k ON k.category_id = cl.category_id
JOIN org_unit u ON u.org_unit_id = a.org_unit_id
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- Who works where today, in which category: what the HR front-end lists by default.
-- (Its result depends on current_date, like the application's.)
CREATE VIEW v_current_staff AS
SELECT e.employee_id, e.employee_code, e.surname, e.given_name,
       c.contract_id, c.contract_type, c.start_date, c.end_date, c.part_time_pct,
       k.code AS category_code, k.system AS category_system, cl.differential,
       u.code AS org_unit_code, u.name AS org_unit_name
FROM employee e
JOIN employment_contract c
  ON c.employee_id = e.employee_id AND c.start_date <= current_date
 AND (c.end_date IS NULL OR c.end_date >= current_date)
JOIN classification cl
  ON cl.contract_id = c.contract_id AND cl.valid_from <= current_date
 AND (cl.valid_to IS NULL OR cl.valid_to >= current_date)
JOIN job_category k ON k.category_id = cl.category_id
JOIN unit_assignment a
  ON a.contract_id = c.contract_id AND a.valid_from <= current_date
 AND (a.valid_to IS NULL OR a.valid_to >= current_date)
JOIN org_unit u ON u.org_unit_id = a.org_unit_id;

-- updated_at is maintained by the database, not by the application.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER employee_touch_updated_at
    BEFORE UPDATE ON employee
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE personnel_document IS
    'Electronic personnel file index: rel_path is relative to the document archive root; '
    'sha256 of the file bytes.';
COMMENT ON COLUMN family_member.disability IS 'gdpr:special-category (health)';
COMMENT ON TABLE union_delegation IS 'gdpr:special-category (trade-union membership)';
COMMENT ON TABLE disciplinary_record IS 'gdpr:judicial-data (art. 10) when criminal_proceeding';
COMMENT ON TABLE headcount_snapshot IS 'Reporting table without a primary key.';
