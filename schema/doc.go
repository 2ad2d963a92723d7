// Package schema holds what the hub persists and exchanges in a fixed
// shape: the SQL migrations (run with bun's migrator, under its lock, on
// SQLite and PostgreSQL) and, as later issues add them, the JSON Schemas of
// the event catalogue.
package schema

import (
	"embed"
	"fmt"

	"github.com/uptrace/bun/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the SQL migrations, in order.
func Migrations() (*migrate.Migrations, error) {
	m := migrate.NewMigrations()
	if err := m.Discover(migrationFiles); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	return m, nil
}
