# Source: 1.2 Flaskによる推論API — 「POSTリクエストでの予測」, flask_app.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# flask_app.py - 完全な推論API
from flask import Flask, request, jsonify
import joblib
import numpy as np

app = Flask(__name__)

# モデル読み込み(起動時に1回だけ)
model = joblib.load('iris_model.pkl')
class_names = ['setosa', 'versicolor', 'virginica']

@app.route('/predict', methods=['POST'])
def predict():
    """
    Iris分類の予測

    リクエスト例:
    {
        "features": [5.1, 3.5, 1.4, 0.2]
    }
    """
    try:
        # リクエストデータ取得
        data = request.get_json()
        features = np.array(data['features']).reshape(1, -1)

        # 予測
        prediction = model.predict(features)[0]
        probabilities = model.predict_proba(features)[0]

        # 結果フォーマット
        return jsonify({
            'prediction': class_names[prediction],
            'class_id': int(prediction),
            'probabilities': {
                class_names[i]: float(prob)
                for i, prob in enumerate(probabilities)
            }
        })
    except Exception as e:
        return jsonify({'error': str(e)}), 400

if __name__ == '__main__':
    app.run(debug=True, host='0.0.0.0', port=5000)
