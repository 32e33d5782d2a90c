-- Attendance: keys, indexes, views and triggers, added after the bulk load so that the big
-- tables are indexed once (a sorted build) instead of row by row.

ALTER TABLE punch ADD PRIMARY KEY (punch_id);
ALTER TABLE daily_balance ADD PRIMARY KEY (employee_id, work_date);
ALTER TABLE justification ADD PRIMARY KEY (justification_id);
ALTER TABLE shift_assignment ADD PRIMARY KEY (assignment_id);
ALTER TABLE shift_assignment ADD UNIQUE (employee_id, work_date);
ALTER TABLE audit_log ADD PRIMARY KEY (audit_id);

CREATE INDEX punch_employee_time_idx ON punch (employee_id, punched_at);
CREATE INDEX justification_employee_idx ON justification (employee_id, work_date);
CREATE INDEX leave_request_employee_idx ON leave_request (employee_id, from_date);
CREATE INDEX overtime_employee_idx ON overtime (employee_id, work_date);
CREATE INDEX audit_log_row_idx ON audit_log (table_name, row_key);
CREATE INDEX badge_employee_idx ON badge (employee_id, valid_from);
CREATE INDEX employment_period_employee_idx ON employment_period (employee_id, start_date);

ALTER TABLE punch
    ADD CONSTRAINT punch_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id),
    ADD CONSTRAINT punch_badge_fk FOREIGN KEY (badge_id) REFERENCES badge (badge_id),
    ADD CONSTRAINT punch_terminal_fk FOREIGN KEY (terminal_id) REFERENCES terminal (terminal_id),
    ADD CONSTRAINT punch_reason_fk FOREIGN KEY (reason_code) REFERENCES reason_code (code);
ALTER TABLE daily_balance
    ADD CONSTRAINT daily_balance_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id),
    ADD CONSTRAINT daily_balance_profile_fk FOREIGN KEY (profile_id) REFERENCES work_profile (profile_id),
    ADD CONSTRAINT daily_balance_reason_fk FOREIGN KEY (reason_code) REFERENCES reason_code (code);
ALTER TABLE justification
    ADD CONSTRAINT justification_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id),
    ADD CONSTRAINT justification_reason_fk FOREIGN KEY (reason_code) REFERENCES reason_code (code);
ALTER TABLE shift_assignment
    ADD CONSTRAINT shift_assignment_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id),
    ADD CONSTRAINT shift_assignment_shift_fk FOREIGN KEY (shift_id) REFERENCES shift (shift_id);
ALTER TABLE leave_request
    ADD CONSTRAINT leave_request_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id),
    ADD CONSTRAINT leave_request_reason_fk FOREIGN KEY (reason_code) REFERENCES reason_code (code);
ALTER TABLE overtime
    ADD CONSTRAINT overtime_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id);
ALTER TABLE monthly_timesheet
    ADD CONSTRAINT monthly_timesheet_employee_fk FOREIGN KEY (employee_id) REFERENCES staff (employee_id);

-- Business totals used by the "horizontal" checks: punches per month and origin...
CREATE VIEW v_punches_per_month AS
SELECT date_trunc('month', p.punched_at AT TIME ZONE 'Europe/Rome')::date AS month,
       p.origin,
       count(*) AS punches,
       count(DISTINCT p.employee_id) AS employees
FROM punch p
GROUP BY 1, 2;

-- ...and absence minutes per reason code, with its special-category flag.
CREATE VIEW v_absence_minutes_by_category AS
SELECT date_trunc('month', b.work_date)::date AS month,
       b.reason_code,
       r.special_category,
       sum(b.absence_minutes) AS absence_minutes
FROM daily_balance b
JOIN reason_code r ON r.code = b.reason_code
WHERE b.absence_minutes > 0
GROUP BY 1, 2, 3;

-- Generic row audit. Arguments: the key column, then columns to leave out (the time-sheet
-- PDF). Inserts and deletes keep the whole row; updates keep only the changed columns,
-- old and new. The actor is the application user when the app sets presenze.actor, else
-- the database user.
CREATE FUNCTION audit_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    row_key text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD) - TG_ARGV[1:];
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW) - TG_ARGV[1:];
    END IF;
    row_key := coalesce(new_row, old_row) ->> TG_ARGV[0];
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, new_row -> o.key)
          INTO old_row, new_row
          FROM jsonb_each(old_row) AS o
         WHERE o.value IS DISTINCT FROM new_row -> o.key;
        IF old_row IS NULL THEN
            RETURN NULL;                    -- nothing changed, nothing to record
        END IF;
    END IF;
    INSERT INTO audit_log (occurred_at, actor, table_name, row_key, action, old_row, new_row, client_addr)
    VALUES (clock_timestamp(),
            coalesce(nullif(current_setting('presenze.actor', true), ''), session_user::text),
            TG_TABLE_NAME, row_key, TG_OP, old_row, new_row, inet_client_addr());
    RETURN NULL;
END
$$;

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Terminal and web punches come from the employee; a manual punch is inserted by the office
-- on the employee's behalf, so it is audited from its insert on.
CREATE TRIGGER punch_audit_insert
    AFTER INSERT ON punch
    FOR EACH ROW WHEN (NEW.origin = 'MAN') EXECUTE FUNCTION audit_row('punch_id');
CREATE TRIGGER punch_audit_change
    AFTER UPDATE OR DELETE ON punch
    FOR EACH ROW EXECUTE FUNCTION audit_row('punch_id');
CREATE TRIGGER monthly_timesheet_audit
    AFTER UPDATE OR DELETE ON monthly_timesheet
    FOR EACH ROW EXECUTE FUNCTION audit_row('timesheet_id', 'pdf');
CREATE TRIGGER leave_request_audit
    AFTER UPDATE OR DELETE ON leave_request
    FOR EACH ROW EXECUTE FUNCTION audit_row('request_id');
CREATE TRIGGER monthly_timesheet_touch
    BEFORE UPDATE ON monthly_timesheet
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER leave_request_touch
    BEFORE UPDATE ON leave_request
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE punch IS
    'legal-evidence: badge punches with their correction history; must stay provably unaltered';
COMMENT ON TABLE monthly_timesheet IS
    'legal-evidence: monthly time sheets with the signed PDF of each closed month';
COMMENT ON COLUMN reason_code.special_category IS
    'true when the code reveals GDPR art. 9 data (health, disability, union membership)';
COMMENT ON TABLE terminal_import_raw IS
    'Raw terminal upload lines; no primary key, exact duplicate rows are expected.';
