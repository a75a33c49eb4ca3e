"""Dashboard pages: scripts run by ``st.navigation`` (see ``dashboard.nav``), never imported."""
