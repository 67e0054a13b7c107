package simulate

import (
	"math/rand/v2"
)

func obj(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func person(r *rand.Rand) map[string]any {
	return obj("id", uuid(r), "name", firstNames[r.IntN(len(firstNames))], "email", email(r), "phone", phone(r),
		"created_at", "2025-03-0"+string(rune('1'+r.IntN(9)))+"T10:00:00Z")
}

func mostly200(r *rand.Rand) int {
	switch x := r.IntN(100); {
	case x < 2:
		return 404
	case x < 3:
		return 500
	}
	return 200
}

// demoServices are the four services of the demo and anomalies scenarios.
func demoServices() []Service {
	return []Service{
		{
			Host: "api.shop.example", Addr: "10.10.1.10:443", Title: "Shop API", RatePerMin: 120,
			Endpoints: []Endpoint{
				{Method: "GET", Template: "/api/v1/products", Class: "documented", Weight: 20, Auth: "none",
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						items := []any{}
						for i := 0; i < 5; i++ {
							items = append(items, obj("sku", sku(r), "name", slug(r), "price", float64(r.IntN(10000))/100))
						}
						return obj("items", items, "page", 1+r.IntN(5), "total", 100+r.IntN(900))
					}},
				{Method: "GET", Template: "/api/v1/products/{sku:sku}", Class: "documented", Weight: 25, Auth: "none",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("sku", p["sku"], "name", slug(r), "price", float64(r.IntN(10000))/100, "in_stock", r.IntN(2) == 1)
					}, Status: mostly200},
				{Method: "GET", Template: "/api/v1/products/{productId:oid}/reviews", Class: "documented", Weight: 8, Auth: "none",
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("reviews", []any{obj("rating", 1+r.IntN(5), "text", slug(r))})
					}},
				{Method: "POST", Template: "/api/v1/orders", Class: "documented", Weight: 6, Auth: "bearer", Sensitive: []string{"card"},
					Req: func(r *rand.Rand) map[string]any {
						return obj("sku", sku(r), "quantity", 1+r.IntN(3), "card_number", cardNumbers[r.IntN(len(cardNumbers))], "email", email(r))
					},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("order_id", r.IntN(1000000), "status", "accepted")
					}},
				{Method: "GET", Template: "/api/v1/orders/{orderId:int}", Class: "documented", Weight: 10, Auth: "bearer", Sensitive: []string{"email"},
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("order_id", p["orderId"], "email", email(r), "total", float64(r.IntN(50000))/100)
					}, Status: mostly200},
				{Method: "GET", Template: "/api/v1/users/me", Class: "documented", Weight: 8, Auth: "bearer", Sensitive: []string{"email", "phone"},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any { return person(r) }},
				{Method: "GET", Template: "/api/v1/users/{userId:uuid}", Class: "documented", Weight: 6, Auth: "bearer", Sensitive: []string{"email", "phone"},
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						m := person(r)
						m["id"] = p["userId"]
						return m
					}},
				{Method: "GET", Template: "/api/v1/internal/export", Class: "shadow", Weight: 1, Auth: "none", Sensitive: []string{"email", "phone"},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("customers", []any{person(r), person(r), person(r)})
					}},
				{Method: "GET", Template: "/api/v0/products/{sku:sku}", Class: "zombie", Weight: 2, Auth: "none",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any { return obj("sku", p["sku"], "price", 1.5) }},
				{Method: "DELETE", Template: "/api/v1/products/{sku:sku}", Class: "orphan", Weight: 0, Auth: "bearer"},
				{Method: "POST", Template: "/graphql", Class: "shadow", Weight: 4, Auth: "bearer", Operation: "GetCart",
					Req: func(r *rand.Rand) map[string]any {
						return obj("operationName", "GetCart", "query", "query GetCart { cart { items { sku quantity } } }")
					},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("data", obj("cart", obj("items", []any{obj("sku", sku(r), "quantity", 1)})))
					}},
			},
		},
		{
			Host: "bank.example", Addr: "10.10.2.20:8080", Title: "Banking API", RatePerMin: 80,
			Endpoints: []Endpoint{
				{Method: "POST", Template: "/v2/auth/login", Class: "documented", Weight: 6, Auth: "none", LoginLike: true,
					Req: func(r *rand.Rand) map[string]any {
						return obj("username", email(r), "password", "hunter2-"+token(r)[:6])
					},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("access_token", "eyJhbGciOiJIUzI1NiJ9.e30."+token(r), "expires_in", 3600)
					},
					Status: func(r *rand.Rand) int {
						if r.IntN(100) < 5 {
							return 401
						}
						return 200
					}},
				{Method: "GET", Template: "/v2/accounts/{accountId:int}", Class: "documented", Weight: 20, Auth: "bearer", Sensitive: []string{"iban", "email", "national_id"},
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("account_id", p["accountId"], "iban", ibans[r.IntN(len(ibans))], "owner_email", email(r),
							"owner_national_id", ssn(r), "balance", float64(r.IntN(10000000))/100)
					}, Status: mostly200},
				{Method: "GET", Template: "/v2/accounts/{accountId:int}/transactions/{transactionId:uuid}", Class: "documented", Weight: 15, Auth: "bearer",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("id", p["transactionId"], "amount", float64(r.IntN(100000))/100, "currency", "EUR")
					}},
				{Method: "GET", Template: "/v2/statements/{statementDate:date}", Class: "documented", Weight: 6, Auth: "bearer",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("date", p["statementDate"], "lines", r.IntN(40))
					}},
				{Method: "POST", Template: "/v2/transfers", Class: "documented", Weight: 5, Auth: "bearer", Sensitive: []string{"iban"},
					Req: func(r *rand.Rand) map[string]any {
						return obj("from_iban", ibans[r.IntN(len(ibans))], "to_iban", ibans[r.IntN(len(ibans))], "amount", r.IntN(5000))
					},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("transfer_id", uuid(r), "state", "pending")
					}},
				{Method: "GET", Template: "/v1/accounts/{accountId:int}", Class: "zombie", Weight: 2, Auth: "bearer", Sensitive: []string{"iban"},
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("account_id", p["accountId"], "iban", ibans[r.IntN(len(ibans))])
					}},
				{Method: "GET", Template: "/v2/debug/config", Class: "shadow", Weight: 1, Auth: "none",
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("db_host", "10.0.3.4", "feature_flags", []any{"new-ledger"}, "version", "2.14.1")
					}},
				{Method: "PUT", Template: "/v2/accounts/{accountId:int}/limits", Class: "orphan", Weight: 0, Auth: "bearer"},
			},
		},
		{
			Host: "id.example", Addr: "10.10.3.30:80", Title: "Identity and content", RatePerMin: 60,
			Endpoints: []Endpoint{
				{Method: "GET", Template: "/users/{email:email}/profile", Class: "documented", Weight: 8, Auth: "apikey", Sensitive: []string{"email", "phone"},
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						m := person(r)
						m["email"] = p["email"]
						return m
					}},
				{Method: "GET", Template: "/files/{digest:sha1}", Class: "documented", Weight: 6, Auth: "apikey",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("digest", p["digest"], "size", r.IntN(1<<20))
					}},
				{Method: "GET", Template: "/sessions/{sessionToken:token}", Class: "shadow", Weight: 3, Auth: "cookie",
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any { return obj("valid", true, "user", email(r)) }, Sensitive: []string{"email"}},
				{Method: "GET", Template: "/blog/{slug:slug}", Class: "documented", Weight: 10, Auth: "none",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("slug", p["slug"], "title", slug(r))
					}},
				{Method: "GET", Template: "/people/{personName:name}", Class: "documented", Weight: 5, Auth: "apikey",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any { return obj("name", p["personName"]) }},
				{Method: "POST", Template: "/mcp", Class: "shadow", Weight: 3, Auth: "bearer", Operation: "search_customers",
					Req: func(r *rand.Rand) map[string]any {
						return obj("jsonrpc", "2.0", "id", r.IntN(1000), "method", "tools/call",
							"params", obj("name", "search_customers", "arguments", obj("query", firstNames[r.IntN(len(firstNames))])))
					},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("jsonrpc", "2.0", "id", 1, "result", obj("content", []any{obj("type", "text", "text", email(r))}))
					}, Sensitive: []string{"email"}},
			},
		},
		{
			Host: "admin.internal", Addr: "10.10.4.40:8443", Title: "Admin API", RatePerMin: 6,
			Endpoints: []Endpoint{
				{Method: "GET", Template: "/admin/users", Class: "documented", Weight: 5, Auth: "bearer", Role: "admin", Sensitive: []string{"email"},
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
						return obj("users", []any{person(r), person(r)})
					}},
				{Method: "POST", Template: "/admin/users/{userId:uuid}/disable", Class: "documented", Weight: 1, Auth: "bearer", Role: "admin",
					Resp: func(r *rand.Rand, _ map[string]string) map[string]any { return obj("disabled", true) }},
				{Method: "GET", Template: "/admin/audit/{auditId:int}", Class: "documented", Weight: 2, Auth: "bearer", Role: "admin",
					Resp: func(r *rand.Rand, p map[string]string) map[string]any {
						return obj("id", p["auditId"], "actor", email(r))
					}, Sensitive: []string{"email"}},
			},
		},
	}
}

// contentService is a publishing API with the harder naming of the
// inventory scenario: v1 and v2 side by side, 64-hex digests, URL-safe
// base64 links, ObjectIds, dates inside a path, emails under a UUID,
// /authors/me beside /authors/{authorName}, a GraphQL mutation and an
// MCP tools/list beside the tool calls.
func contentService() Service {
	article := func(r *rand.Rand, p map[string]string) map[string]any {
		return obj("id", objectID(r), "slug", p["slug"], "title", slug(r), "author", email(r), "published", date(r))
	}
	return Service{
		Host: "content.example", Addr: "10.10.5.50:8000", Title: "Content API", RatePerMin: 90,
		Endpoints: []Endpoint{
			{Method: "GET", Template: "/v1/articles/{slug:slug}", Class: "zombie", Weight: 3, Auth: "none", Resp: article},
			{Method: "GET", Template: "/v2/articles/{articleId:oid}", Class: "documented", Weight: 20, Auth: "none", Resp: article, Status: mostly200},
			{Method: "POST", Template: "/v2/articles", Class: "documented", Weight: 3, Auth: "bearer",
				Req: func(r *rand.Rand) map[string]any { return obj("title", slug(r), "body", slug(r)+" "+slug(r)) }},
			{Method: "PATCH", Template: "/v2/articles/{articleId:oid}", Class: "shadow", Weight: 2, Auth: "bearer",
				Req: func(r *rand.Rand) map[string]any { return obj("title", slug(r)) }},
			{Method: "DELETE", Template: "/v2/articles/{articleId:oid}", Class: "orphan", Weight: 0, Auth: "bearer"},
			{Method: "GET", Template: "/v2/media/{digest:sha256}", Class: "documented", Weight: 10, Auth: "none",
				Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					return obj("digest", p["digest"], "bytes", r.IntN(1<<24), "type", "image/webp")
				}},
			{Method: "GET", Template: "/v2/downloads/{linkToken:b64}", Class: "documented", Weight: 6, Auth: "none",
				Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
					return obj("url", "https://cdn.example/"+hexN(r, 16))
				}},
			{Method: "GET", Template: "/v2/calendar/{day:date}/events", Class: "documented", Weight: 6, Auth: "none",
				Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					return obj("day", p["day"], "events", []any{obj("title", slug(r))})
				}},
			{Method: "GET", Template: "/v2/orgs/{orgId:uuid}/members/{memberEmail:email}", Class: "documented", Weight: 5, Auth: "bearer",
				Sensitive: []string{"email", "phone"},
				Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					m := person(r)
					m["email"] = p["memberEmail"]
					return m
				}},
			{Method: "GET", Template: "/v2/authors/me", Class: "documented", Weight: 6, Auth: "bearer", Sensitive: []string{"email"},
				Resp: func(r *rand.Rand, _ map[string]string) map[string]any { return person(r) }},
			{Method: "GET", Template: "/v2/authors/{authorName:name}", Class: "documented", Weight: 6, Auth: "none",
				Resp: func(r *rand.Rand, p map[string]string) map[string]any {
					return obj("name", p["authorName"], "articles", r.IntN(90))
				}},
			{Method: "POST", Template: "/graphql", Class: "shadow", Weight: 3, Auth: "bearer", Operation: "PublishArticle",
				Req: func(r *rand.Rand) map[string]any {
					return obj("operationName", "PublishArticle", "query", "mutation PublishArticle($id: ID!) { publish(id: $id) { id state } }",
						"variables", obj("id", objectID(r)))
				},
				Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
					return obj("data", obj("publish", obj("id", objectID(r), "state", "PUBLISHED")))
				}},
			{Method: "POST", Template: "/mcp", Class: "shadow", Weight: 2, Auth: "bearer", Operation: "tools/list",
				Req: func(r *rand.Rand) map[string]any {
					return obj("jsonrpc", "2.0", "id", r.IntN(1000), "method", "tools/list")
				},
				Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
					return obj("jsonrpc", "2.0", "id", 1, "result", obj("tools", []any{obj("name", "find_article"), obj("name", "draft_summary")}))
				}},
			{Method: "POST", Template: "/mcp", Class: "shadow", Weight: 3, Auth: "bearer", Operation: "find_article",
				Req: func(r *rand.Rand) map[string]any {
					return obj("jsonrpc", "2.0", "id", r.IntN(1000), "method", "tools/call",
						"params", obj("name", "find_article", "arguments", obj("query", slug(r))))
				},
				Resp: func(r *rand.Rand, _ map[string]string) map[string]any {
					return obj("jsonrpc", "2.0", "id", 1, "result", obj("content", []any{obj("type", "text", "text", slug(r))}))
				}},
		},
	}
}
