"""Social organisations (社会组织): companies, schools, communities, NGOs and government bodies, their
admins, members, invites, join requests and points account (docs/community.md)."""
